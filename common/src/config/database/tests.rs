//! Tests of the `database` section: TLS modes, host and port lists.

use std::path::Path;

use super::*;
use crate::config::tests::load;
use crate::config::Config;

#[test]
fn sslmode_takes_libpq_values_and_a_bad_one_names_the_key_and_the_choices() {
    for (value, mode) in [
        ("disable", SslMode::Disable),
        ("prefer", SslMode::Prefer),
        ("require", SslMode::Require),
        ("verify-ca", SslMode::VerifyCa),
        ("verify-full", SslMode::VerifyFull),
    ] {
        let config = load(&format!("database:\n  sslmode: {value}\n"), &[]).unwrap();
        assert_eq!(config.database.sslmode, mode);
        assert_eq!(mode.as_str(), value);
    }
    let err = load("database:\n  sslmode: verify\n", &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("database.sslmode"), "{err}");
    for allowed in ["disable", "prefer", "require", "verify-ca", "verify-full"] {
        assert!(err.contains(allowed), "{allowed} not listed: {err}");
    }
}

#[test]
fn the_shipped_config_defaults_to_prefer_and_no_tls_files() {
    let text = include_str!("../../../../config.yaml");
    let config = load(text, &[("DB_PASSWORD", "x")]).unwrap();
    assert_eq!(config.database.sslmode, SslMode::Prefer);
    assert_eq!(config.database.sslrootcert(), None);
    assert_eq!(config.propagator.tls_ca_file(), None);
    assert_eq!(config.propagator.tls_client_identity_files(), None);
    let env = [
        ("DB_PASSWORD", "x"),
        ("DB_SSLMODE", "verify-full"),
        ("DB_SSLROOTCERT", "/etc/pki/db-ca.pem"),
    ];
    let config = load(text, &env).unwrap();
    assert_eq!(config.database.sslmode, SslMode::VerifyFull);
    assert_eq!(
        config.database.sslrootcert(),
        Some(Path::new("/etc/pki/db-ca.pem"))
    );
}

fn endpoints(config: &Config) -> Vec<String> {
    let endpoints = config.database.endpoints().unwrap();
    endpoints.iter().map(DbEndpoint::to_string).collect()
}

#[test]
fn several_hosts_take_one_port_for_all_or_one_each_as_a_number_a_list_or_a_string() {
    let cases: [(&str, &[&str], &str); 6] = [
        (
            "host: db1\n  port: 5432",
            &["db1:5432"],
            "one host, one port",
        ),
        (
            "host: db1,db2\n  port: 6000",
            &["db1:6000", "db2:6000"],
            "one port applies to every host, as libpq's",
        ),
        (
            "host: db1, db2\n  port: 5432,5433",
            &["db1:5432", "db2:5433"],
            "a comma-separated string, spaces around items ignored",
        ),
        (
            "host: db1,db2\n  port: [5432, 5433]",
            &["db1:5432", "db2:5433"],
            "a YAML list of numbers",
        ),
        (
            "host: db1,db2\n  port: [\"5432\", 5433]",
            &["db1:5432", "db2:5433"],
            "a YAML list of strings and numbers",
        ),
        (
            "host: /run/postgresql,db2\n  port: \"5432\"",
            &["/run/postgresql:5432", "db2:5432"],
            "a quoted port and a Unix socket directory",
        ),
    ];
    for (yaml, expected, why) in cases {
        let config = load(&format!("database:\n  {yaml}\n"), &[]).unwrap();
        assert_eq!(endpoints(&config), expected, "{why}");
    }
}

#[test]
fn db_host_and_db_port_take_lists_through_the_shipped_config() {
    let text = include_str!("../../../../config.yaml");
    let env = [
        ("DB_PASSWORD", "s3cret"),
        ("DB_HOST", "db1.internal,db2.internal"),
        ("DB_PORT", "5432,5433"),
    ];
    let config = load(text, &env).unwrap();
    assert_eq!(
        endpoints(&config),
        ["db1.internal:5432", "db2.internal:5433"]
    );
    assert_eq!(
        config.database.target_session_attrs,
        TargetSessionAttrs::ReadWrite,
        "read-write by default"
    );
    assert_eq!(config.database.port.to_string(), "5432,5433");
    let config = load(
        text,
        &[("DB_PASSWORD", "s"), ("DB_TARGET_SESSION_ATTRS", "any")],
    )
    .unwrap();
    assert_eq!(
        config.database.target_session_attrs,
        TargetSessionAttrs::Any
    );
}

#[test]
fn target_session_attrs_takes_any_or_read_write_and_defaults_to_read_write() {
    let config = load("database:\n  target_session_attrs: any\n", &[]).unwrap();
    assert_eq!(
        config.database.target_session_attrs,
        TargetSessionAttrs::Any
    );
    let config = load("database:\n  target_session_attrs: read-write\n", &[]).unwrap();
    assert_eq!(
        config.database.target_session_attrs,
        TargetSessionAttrs::ReadWrite
    );
    let config = load("database:\n  host: db\n", &[]).unwrap();
    assert_eq!(
        config.database.target_session_attrs,
        TargetSessionAttrs::ReadWrite
    );
}

#[test]
fn bad_host_and_port_lists_are_refused_naming_the_key_and_the_file() {
    let cases = [
        (
            "host: db1,db2,db3\n  port: 5432,5433",
            "database.port",
            "has 2 ports",
            "two ports for three hosts",
        ),
        (
            "host: db1\n  port: [5432, 5433]",
            "database.port",
            "for 1 hosts",
            "two ports for one host",
        ),
        (
            "host: db1,,db2",
            "database.host",
            "item 2 of 3",
            "an empty item between two commas",
        ),
        (
            "host: db1,",
            "database.host",
            "item 2 of 2",
            "a trailing comma",
        ),
        ("host: \"\"", "database.host", "is empty", "no host at all"),
        (
            "host: db1,db2\n  port: 5432,70000",
            "database.port",
            "out of range",
            "a port above 65535 in a string",
        ),
        (
            "port: 70000",
            "database.port",
            "out of range",
            "a port above 65535",
        ),
        ("port: 0", "database.port", "out of range", "port 0"),
        (
            "port: [5432, -1]",
            "database.port",
            "out of range",
            "a negative port in a list",
        ),
        (
            "host: a,b\n  port: 5432,,5433",
            "database.port",
            "empty port",
            "an empty port between two commas",
        ),
        (
            "port: 54x2",
            "database.port",
            "not a port number",
            "a port that is no number",
        ),
        ("port: []", "database.port", "empty list", "an empty list"),
        (
            "target_session_attrs: read-only",
            "database.target_session_attrs",
            "any",
            "a libpq value the consumer has no use for",
        ),
        (
            "target_session_attrs: primary",
            "database.target_session_attrs",
            "read-write",
            "an unknown value",
        ),
    ];
    for (yaml, key, problem, why) in cases {
        let err = load(&format!("database:\n  {yaml}\n"), &[])
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("config.yaml:"), "{why}: {err}");
        assert!(err.contains(key), "{why}: names {key}: {err}");
        assert!(err.contains(problem), "{why}: says `{problem}`: {err}");
        assert!(!err.contains('\n'), "{why}: one line: {err}");
    }
}
